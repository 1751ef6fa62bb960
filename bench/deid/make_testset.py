"""Write the de-identification test set: invented interview snippets with gold spans.

Everything here was written for Consensa: the people, places, organisations,
phone numbers, e-mail addresses and street addresses are invented (phone numbers
use the ranges set aside for fiction where a country has one: 555-01xx in North
America, 020 7946 0xxx and 07700 900xxx in the UK). The snippets read like
transcribed psychotherapy-research interviews: speaker labels, hesitations,
backchannels, and sentences with no identifier at all (so that precision means
something: "three years", "CBT", "May I ask", "I was 5 minutes late").

Gold spans: a person's name without its title ("Dr. [Lopez]"), the number of an
age ("I was [34]", "a [52]-year-old"), the whole of a date, phone number, e-mail
address or street address (with its city and postcode when written together).

    .venv/bin/python bench/deid/make_testset.py

writes ``bench/deid/testset.jsonl`` (the benchmark: the 110 template snippets, then
the hand-written hard subset of :data:`HARD`, records with ``"subset": "hard"``) and
``tests/data/deid_small.jsonl`` (every third template record and the whole hard
subset, for the test suite). The output is the same on every run (a fixed seed).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SEED = 20240503

FIRST = ["Maria", "Aisha", "Tomasz", "Siobhan", "Kwame", "Priya", "Mei", "Dmitri", "Fatima",
         "Joaquín", "Olumide", "Ngozi", "Hiroshi", "Svetlana", "Aroha", "Tariq", "Ingrid",
         "Rafael", "Chioma", "Bogdan", "Leilani", "Anjali", "Desmond", "Yusuf", "Marisol",
         "Eamon", "Thandiwe", "Lars", "Esperanza", "Kofi", "Nadia", "Ravi", "Imogen", "Mateus",
         "Zainab", "Henrik", "Camila", "Obinna", "Agnieszka", "Luca", "Beatriz", "Jamal", "Wen",
         "Saoirse", "Emeka", "Daniela", "Arjun", "Freya", "Rachel", "Tom", "Karen", "Ben",
         "Sarah", "Michael", "Dev", "Noor", "Ines", "Kai", "Jonah", "Lucía"]
LAST = ["Lopez", "Okonkwo", "Kowalski", "O'Sullivan", "Mensah", "Natarajan", "Zhang", "Volkov",
        "Haddad", "Herrera", "Adeyemi", "Tanaka", "Petrova", "Ngata", "Rahman", "Lindqvist",
        "Moreau", "Eze", "Novak", "Kahale", "Sharma", "Clarke", "Yilmaz", "Castillo", "Byrne",
        "Dlamini", "Johansson", "Hughes", "Fitzgerald", "Nguyen", "Brennan", "Osei", "Ferreira",
        "Abernathy", "Kaur", "Whitfield", "Delacroix", "Mwangi", "Sørensen", "Van der Berg"]
PLACES = ["Chicago", "Manchester", "Lagos", "Krakow", "Galway", "Accra", "Chennai", "Shanghai",
          "Kyiv", "Beirut", "Guadalajara", "Leeds", "Toronto", "Melbourne", "Auckland",
          "Nairobi", "Lisbon", "Glasgow", "Ohio", "Texas", "Poland", "Nigeria", "Ireland",
          "Mexico", "Vietnam", "Brazil", "Kenya", "Cork", "Birmingham", "Minneapolis",
          "Portland", "Seoul", "Manila", "Johannesburg", "Cardiff", "Sheffield", "Boston",
          "Rotterdam", "Bristol", "Phoenix"]
ORGS = ["St. Luke's Hospital", "Riverside Community Clinic", "the University of Leeds",
        "Northwood High School", "Kaiser Permanente", "Mercy General Hospital", "Tesco",
        "Walmart", "Barclays", "the Red Cross", "Lakeside Counselling Service",
        "Greenfield Primary School", "Amazon", "Deloitte", "Oakridge Baptist Church",
        "Hope Springs Recovery Center", "Ford", "the Salvation Army", "Goldman Sachs",
        "Brookside Medical Practice", "Harland & Wolff", "the Samaritans", "Microsoft",
        "Trinity College", "Westfield Mental Health Trust", "Starbucks"]
STREETS = ["Birch Grove", "Maple Street", "Kings Road", "Elm Avenue", "Harcourt Terrace",
           "Oak Lane", "Victoria Road", "Willow Drive", "Station Road", "Cedar Court",
           "Jefferson Boulevard", "Church Street", "Mill Lane", "Orchard Close"]
CITIES_FOR_ADDRESS = ["Springfield", "Brighton", "Dublin", "Leeds", "Portland", "Bristol",
                      "Austin", "York"]
EMAIL_DOMAINS = ["gmail.com", "outlook.com", "yahoo.co.uk", "hotmail.com", "protonmail.com",
                 "riverside-clinic.org", "leeds.ac.uk", "icloud.com"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
WORDS = {12: "twelve", 14: "fourteen", 16: "sixteen", 17: "seventeen", 19: "nineteen",
         21: "twenty-one", 30: "thirty", 34: "thirty-four", 40: "forty", 45: "forty-five",
         52: "fifty-two", 60: "sixty", 8: "eight", 9: "nine"}

INTERVIEWER_LABELS = ["Interviewer", "I", "INT", "Interviewer 2", "Q"]
PARTICIPANT_LABELS = ["P{n}", "Participant {n}", "Therapist", "Respondent", "T", "Client"]
NAMED_INTERVIEWERS = [("Mara", "Reyes"), ("Jon", "Park"), ("Elif", "Demir"), ("Owen", "Tate")]

# Participant sentences. Slots: {P.full} {P.first} {P.last} {P.title} (title + last name,
# the gold span is the name only), {Q.first} {Q.full} (a second person), {REL} (a
# relation, "my sister"), {PLACE} {PLACE2} {ORG} {DATE} {YEAR} {MONTHYEAR} {PHONE}
# {EMAIL} {SPELLED_EMAIL} {ADDRESS} {STREET} {AGE} {AGEW} (an age in words).
PARTICIPANT = [
    "My supervisor at the time, {P.title}, was the first person I told about it.",
    "I trained at {ORG} and then moved to {PLACE} for my first proper job.",
    "{REL} {Q.first} was {AGE} when she got the diagnosis, and I was the one who drove her.",
    "I remember the date exactly, it was {DATE}, because it was the week after the funeral.",
    "If you need to reach me later it's {PHONE}, that's my mobile.",
    "You can email me at {EMAIL} and I'll send you the notes.",
    "We were living at {ADDRESS} then, a tiny flat above a chip shop.",
    "I was {AGE} when my father left, so, um, I know something about that kind of silence.",
    "She was a {AGE}-year-old woman who'd never spoken about the abuse to anyone.",
    "{P.first} said to me afterwards, you know, that she'd never seen a therapist cry before.",
    "I grew up in {PLACE}, and my family didn't really talk about feelings at all.",
    "I worked for {ORG} for about six years before I retrained.",
    "Honestly, {P.first} was the one who made me see it. {P.first} just sat with it.",
    "We had a client, let's call her, no, sorry, her name was {Q.full}, and she was {AGE}.",
    "In {YEAR} I started at {ORG}, in the adolescent team.",
    "The office number is {PHONE} if you ever want to check anything with the clinic.",
    "It was back in {MONTHYEAR}, just before I qualified.",
    "{P.full} ran the consultation group, and she was very kind about it.",
    "My husband's from {PLACE}, so we go back most summers.",
    "I turned {AGE} that year, which felt significant for some reason.",
    "The referral came through {ORG}, as they usually do.",
    "He'd moved here from {PLACE} when he was {AGEW}, on his own.",
    "Send it to {EMAIL}, or to my work address, whichever is easier.",
    "I think it was {DATE}, a Tuesday, maybe.",
    "Her mum lived on {STREET}, not far from the clinic.",
    "{REL} {Q.first} still lives in {PLACE}.",
    "I did my placement at {ORG}, and {P.title} supervised me there.",
    "When I was {AGEW} I decided I'd never cry in front of anyone again.",
    "The letter went to {ADDRESS}, but she'd already moved out.",
    "Call {PHONE} and ask for {P.first}, she knows the whole story.",
    "We met at {ORG} in {YEAR}, both of us newly qualified.",
    "He was only {AGE}, just a lad, really, and so angry.",
    "{P.first}'s mother came from {PLACE}, and that mattered to her.",
    "I emailed {P.first} at {EMAIL} the next morning to apologise.",
    "My old address was {ADDRESS}, if that's what the form needs.",
    "It was {DATE} when I finally told {P.title} what had happened.",
    "I'd been at {ORG} since {MONTHYEAR}.",
    "Her number, I still have it, is {PHONE}.",
    "I'm {AGE} now, and I think I'm only starting to understand it.",
    "So {P.full} and I co-led the group at {ORG} for two years.",
    "The hospital was in {PLACE}, about an hour from {PLACE2}.",
    "If it helps, my personal email is {SPELLED_EMAIL}.",
    "{REL} {Q.first} works at {ORG} now, funnily enough.",
    "That session was on {DATE}. I wrote it in my diary.",
    "When {P.first} rang, it was from a number starting {PHONE}, and I didn't pick up.",
    "He'd just turned {AGEW}, and he said he felt ancient.",
    "We moved from {PLACE} to {PLACE2} when I was {AGE}.",
    "I still see {P.title} at conferences sometimes.",
    "She's {AGE} and she's raising three kids alone.",
    "The clinic is at {ADDRESS}, on the second floor.",
    "Ring me on {PHONE} or email {EMAIL}, whatever suits.",
    "And {Q.full}, who ran the ward, told me to take the afternoon off.",
    "My training was at {ORG}, and nobody there mentioned tears.",
    "I was born in {YEAR}, in {PLACE}.",
    "Her appointment was moved to {DATE}, and she never came.",
    "{P.first} and {Q.first} both said the same thing, which was strange.",
    "Aged {AGE}, she'd already lost both parents.",
    "He'd worked at {ORG} until he was {AGE}, and then it all fell apart.",
    "We lived on {STREET} for most of my childhood.",
    "I think {P.first} would say I was more upset than she was.",
]
INTERVIEWER = [
    "Thanks for making time for this, {P.first}.",
    "Could you tell me about a time you cried in session?",
    "And how did the client respond?",
    "Mm-hmm. Go on.",
    "What happened next, {P.first}?",
    "Did you bring that to supervision?",
    "Was that at {ORG}?",
    "Right. And where were you working then?",
    "So that was in {YEAR}?",
    "I'll send the consent form to {EMAIL}, is that right?",
]
# Sentences with no identifier, several with words a careless de-identifier replaces.
NEGATIVE = [
    "We did CBT together for about three years, then some DBT skills work.",
    "I was 5 minutes late that day and I felt terrible about it.",
    "May I say something about that first session?",
    "Honestly, the EMDR training helped more than anything else.",
    "My mum used to say God never gives you more than you can handle.",
    "Every Thursday we'd meet, for fifty minutes, for almost two years.",
    "It cost about $2,000 a month, which she couldn't afford.",
    "She scored 27 on the PHQ-9 at intake and 9 at the end.",
    "Session 12 was the turning point, I think.",
    "We read Winnicott in training, and Yalom, of course.",
    "Grief is not linear, and neither is therapy.",
    "Hope is a strange word in that room.",
    "Will you be okay, she asked me, and I didn't know what to say.",
    "I've been practising for twenty-two years now.",
    "It was about three o'clock in the afternoon, the light was going.",
    "There were 40 people in the group, and nobody spoke.",
    "Mm. Yeah. I mean, yeah.",
    "The Interviewer asked me that once before, in the pilot.",
    "It took me a good ten years to stop apologising for it.",
    "She'd had 6 sessions of CBT before she came to me.",
    "Christmas is always hard for clients who've lost someone.",
    "I think Carl Rogers would call it congruence, being real in the room.",
    "Back then I was seeing 30 clients a week, which is too many.",
    "The waiting list was 18 months long at that point.",
    "We use the GAD-7 and the CORE-10 every few sessions.",
    "That was maybe 2 or 3 weeks after the funeral.",
    "In the second year of training we did a module on endings.",
    "Page 4 of the workbook has the breathing exercise.",
    "I'd say 90 percent of my caseload is trauma work now.",
    "Sorry, can you repeat the question?",
]
# The hard subset: snippets written by hand for Consensa, in the style of automatic
# transcripts (lower case, numbers spoken as words) and of the identifiers the
# template sentences above do not have: unusual names, spoken phone numbers, postcodes
# of the UK, Ireland (Eircode: both halves), the US (ZIP, ZIP+4) and Canada, holidays
# that name a day. Identifiers are marked [words|TYPE]; a first line "known: A; B" lists
# the names a config would give. Several snippets hold words that look like the
# identifiers and are not (counting aloud, "will" and "hope", road numbers, a vitamin,
# a room number, "Christmas" as a season), so that precision means something here too.
HARD = [
    "known: Helen Okafor\nInterviewer: who did you talk to first?\n\nP1: i talked to "
    "[helen okafor|PERSON] yesterday actually, and [helen|PERSON] said i will be fine, "
    "i hope so.",
    "known: Helen Okafor\nInterviewer: and your supervisor?\n\nP2: oh that was doctor "
    "[okafor|PERSON]. [HELEN OKAFOR|PERSON], she signed everything off.",
    "known: Mara Reyes\nInterviewer: so tell me about that week\n\nP3: well [mara|PERSON] "
    "had already left, so i rang [mara reyes|PERSON] at home.",
    "Interviewer: who did you tell?\n\nP4: so i told [priya|PERSON] about it and she just, "
    "she just listened. may i say, that was rare.",
    "Interviewer: what happened then\n\nP5: my sister [siobhan|PERSON] rang me the next "
    "morning and we counted one, two, three, four, five, six, seven, eight breaths together.",
    "Interviewer: mm-hm\n\nP6: and then [tomasz|PERSON] came in and sat down, and "
    "[aisha|PERSON] was already crying.",
    "Interviewer: go on\n\nP7: yeah [kwame|PERSON] was my first client who really got to me. "
    "i will never forget that mark he left.",
    "Interviewer: who ran it?\n\nP8: it was [dmitri volkov|PERSON] who ran the group back "
    "then, and [ngozi|PERSON] did the notes.",
    "Therapist: The consultant was [Zephyrine Quayle-Ndiaye|PERSON], and she didn't suffer "
    "fools. [Zephyrine|PERSON] taught me more than the course did.",
    "P10: I still think about [Oluwaseun Adebayo-Thorsen|PERSON] most weeks, honestly.",
    "Interviewer: and the client's name?\n\nP11: her name was [ximena urquhart|PERSON], and "
    "she was [nineteen|AGE].",
    "Interviewer: can we reach you later?\n\nP12: yeah my number's [oh seven seven double "
    "oh, nine double oh one two three|PHONE] if you need it.",
    "Interviewer: and the office?\n\nP13: ring the office on [zero two zero, seven nine four "
    "six, triple oh five eight|PHONE], they'll put you through.",
    "P14: it's [five five five, oh one two, three four five six|PHONE], that's the clinic "
    "line, nine to five, two or three days a week.",
    "P15: you can text me on [oh eight seven, one two three, four five six seven|PHONE] any "
    "time.",
    "P16: Call [five five five oh one nine nine|PHONE] and ask for the front desk.",
    "Interviewer: where was the practice?\n\nP17: The clinic was at [D02 X285|ADDRESS], "
    "right in the city centre, in room D02 on the second floor.",
    "P18: Send it to my mam's, the Eircode is [D6W Y2P4|ADDRESS].",
    "P19: it's [h91 r2kn|ADDRESS] if you're posting it, out past the a6 and the m6.",
    "P20: We were in a basement flat, [LS6 3QH|ADDRESS], and the damp got into everything.",
    "P21: my postcode then was [cf10 3at|ADDRESS], right by the station.",
    "P22: The referral letter went to [Flat 2, 14 Harcourt Terrace, Sheffield S11 8TX|ADDRESS]"
    " and then nobody followed it up. She was on B12 injections by then.",
    "P23: we moved, zip code [97214|ADDRESS], when i was [twelve|AGE].",
    "P24: The form still had my old zip, [02139-4307|ADDRESS], so the letters kept going "
    "there. There were 10000 people on that waiting list.",
    "P25: It was [Austin, Texas 78701|ADDRESS], a little place off the main road.",
    "P26: The office was at [M5V 3L9|ADDRESS], near the lake, and later at "
    "[H2X 1Y4|ADDRESS].",
    "P27: She died on [Christmas Eve|DATE], and I had a session with her the week before. "
    "Christmas is always hard for my clients anyway.",
    "P28: We met again on [Easter Monday|DATE], which felt symbolic somehow.",
    "P29: The first session was the day after [Boxing Day|DATE].",
    "P30: He relapsed over [Thanksgiving|DATE], at his brother's.",
    "P31: It was [St Patrick's Day|DATE] and the whole town was out.",
    "P32: she texted me on [new year's eve|DATE] at midnight, just one line.",
    "P33: on [christmas eve|DATE] my dad left, and that was that.",
    "P34: The accident was on [Good Friday|DATE], in [1998|DATE].",
    "P35: I saw her last on [St. Patrick's Day|DATE] and again on [Halloween|DATE].",
    "Interviewer: anything else?\n\nP36: only that [ravi|PERSON] and [ines|PERSON] both "
    "said the same thing. grace under pressure, my mum calls it.",
    # half a name, ages said of a person, a town beside its postcode, markup around a name
    "known: Ellsworth\nInterviewer: who referred you?\n\nP37: I spoke to [Will Ellsworth|PERSON] "
    "about it first. Will you need his letter too?",
    "P38: then [hélène dubois|PERSON] rang me, and [hélène|PERSON] was upset, so i will ring "
    "back.",
    "Interviewer: how old was she?\n\nP39: The client was [34|AGE] at the time. We had 34 "
    "sessions, and I have practised for 22 years; she was in her thirties, I suppose.",
    "P40: My eldest was [twelve|AGE] then, and the score was 12 at the start.",
    "P41: The letters went to [Leeds LS6 2AB|ADDRESS], a damp flat above a shop.",
    "P42: We rented just off [Quarry Lane, Tadcaster LS24 9QR|ADDRESS] for a year.",
    "[00:01:50] [Marguerite Quillfeather-Dunmore|PERSON]: It was the [3rd of May|DATE]. I "
    "remember the rain.",
    "P44: send it to [12 Orchard Close, Ilkley|ADDRESS] and mark it private.",
]
RELATIONS = ["My sister", "My brother", "My colleague", "My friend", "My cousin", "My wife",
             "My husband", "My supervisor"]
TITLES = ["Dr.", "Dr", "Mrs.", "Mr.", "Ms.", "Professor"]


class Builder:
    """Text with gold spans, written piece by piece."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.spans: list[dict] = []
        self.length = 0

    def text(self, piece: str) -> None:
        self.parts.append(piece)
        self.length += len(piece)

    def gold(self, piece: str, typ: str) -> None:
        self.spans.append({"start": self.length, "end": self.length + len(piece),
                           "type": typ, "text": piece})
        self.text(piece)

    def value(self) -> str:
        return "".join(self.parts)


def phone(rng: random.Random) -> str:
    d = lambda n: "".join(str(rng.randrange(10)) for _ in range(n))  # noqa: E731
    forms = [
        lambda: f"(555) 01{d(1)}-{d(4)}",
        lambda: f"555-01{d(1)}-{d(4)}",
        lambda: f"+1 555 01{d(1)} {d(4)}",
        lambda: f"+1 (555) 01{d(1)}-{d(4)}",
        lambda: f"555.01{d(1)}.{d(4)}",
        lambda: f"020 7946 0{d(3)}",
        lambda: f"+44 20 7946 0{d(3)}",
        lambda: f"+44 (0)20 7946 0{d(3)}",
        lambda: f"07700 900{d(3)}",
        lambda: f"+44 7700 900{d(3)}",
        lambda: f"+353 1 {d(3)} {d(4)}",
        lambda: f"+49 30 {d(7)}",
        lambda: f"0049 30 {d(3)} {d(4)}",
        lambda: f"+33 1 {d(2)} {d(2)} {d(2)} {d(2)}",
        lambda: f"+61 2 {d(4)} {d(4)}",
        lambda: f"+91 98{d(3)} {d(5)}",
        lambda: f"1-800-555-01{d(2)}",
        lambda: f"+234 803 {d(3)} {d(4)}",
    ]
    return rng.choice(forms)()


def email(rng: random.Random, first: str, last: str) -> str:
    f = re.sub(r"[^a-z]", "", first.lower().replace("í", "i").replace("ú", "u"))
    la = re.sub(r"[^a-z]", "", last.lower().replace("ø", "o"))
    user = rng.choice([f"{f}.{la}", f"{f[0]}{la}", f"{f}{rng.randrange(10, 99)}",
                       f"{f}_{la}", f"{la}.{f[0]}"])
    return f"{user}@{rng.choice(EMAIL_DOMAINS)}"


def spelled_email(rng: random.Random, first: str, last: str) -> str:
    f = re.sub(r"[^a-z]", "", first.lower())
    la = re.sub(r"[^a-z]", "", last.lower())
    return f"{f} dot {la} at {rng.choice(['gmail', 'outlook', 'hotmail'])} dot com"


def address(rng: random.Random) -> str:
    n = rng.randrange(2, 400)
    street = rng.choice(STREETS)
    city = rng.choice(CITIES_FOR_ADDRESS)
    forms = [
        f"{n} {street}",
        f"{n} {street}, {city}",
        f"Flat {rng.randrange(1, 9)}, {n} {street}",
        f"{n} {street}, Apt {rng.randrange(1, 12)}{rng.choice('ABC')}",
        f"{n} {street}, {city} BN{rng.randrange(1, 9)} {rng.randrange(1, 9)}AA",
        f"{n} {street}, {city}, OR 972{rng.randrange(10, 99)}",
        f"PO Box {rng.randrange(100, 999)}",
    ]
    return rng.choice(forms)


def date(rng: random.Random) -> str:
    day, month, year = rng.randrange(1, 29), rng.choice(MONTHS), rng.randrange(1995, 2024)
    m = MONTHS.index(month) + 1
    suffix = {1: "st", 2: "nd", 3: "rd", 21: "st", 22: "nd", 23: "rd"}.get(day, "th")
    forms = [f"{day} {month} {year}", f"{month} {day}, {year}", f"the {day}{suffix} of {month}",
             f"{month} {day}{suffix}", f"{day:02d}/{m:02d}/{year}", f"{year}-{m:02d}-{day:02d}",
             f"{day} {month[:3]} {year}", f"{month} {year}"]
    return rng.choice(forms)


class Record:
    """One snippet: a few turns of one interview."""

    def __init__(self, rng: random.Random, index: int) -> None:
        self.rng = rng
        self.index = index
        self.b = Builder()
        first, last = rng.choice(FIRST), rng.choice(LAST)
        q_first, q_last = rng.choice([f for f in FIRST if f != first]), rng.choice(LAST)
        self.people = {"P": (first, last), "Q": (q_first, q_last)}
        self.known: list[str] = []
        self.labels: list[str] = []

    def slot(self, name: str) -> None:
        rng, b = self.rng, self.b
        if "." in name and name[0] in "PQ":
            who, form = name.split(".")
            first, last = self.people[who]
            if form == "first":
                b.gold(first, "PERSON")
            elif form == "last":
                b.gold(last, "PERSON")
            elif form == "full":
                b.gold(f"{first} {last}", "PERSON")
            elif form == "title":
                b.text(rng.choice(TITLES) + " ")
                b.gold(last, "PERSON")
        elif name == "REL":
            b.text(rng.choice(RELATIONS))
        elif name in ("PLACE", "PLACE2"):
            b.gold(rng.choice(PLACES), "PLACE")
        elif name == "ORG":
            org = rng.choice(ORGS)
            if org.startswith("the "):
                b.text("the ")
                org = org[4:]
            b.gold(org, "ORG")
        elif name == "DATE":
            d = date(rng)
            if d.startswith("the "):
                b.text("the ")
                d = d[4:]
            b.gold(d, "DATE")
        elif name == "YEAR":
            b.gold(str(rng.randrange(1985, 2024)), "DATE")
        elif name == "MONTHYEAR":
            b.gold(f"{rng.choice(MONTHS)} {rng.randrange(1985, 2024)}", "DATE")
        elif name == "PHONE":
            b.gold(phone(rng), "PHONE")
        elif name == "EMAIL":
            b.gold(email(rng, *self.people["P"]), "EMAIL")
        elif name == "SPELLED_EMAIL":
            b.gold(spelled_email(rng, *self.people["P"]), "EMAIL")
        elif name == "ADDRESS":
            b.gold(address(rng), "ADDRESS")
        elif name == "STREET":
            b.gold(rng.choice(STREETS), "ADDRESS")
        elif name == "AGE":
            b.gold(str(rng.randrange(8, 90)), "AGE")
        elif name == "AGEW":
            b.gold(WORDS[rng.choice(sorted(WORDS))], "AGE")
        else:  # pragma: no cover
            raise KeyError(name)

    def sentence(self, template: str) -> None:
        position = 0
        for m in re.finditer(r"\{([A-Z0-9.a-z_]+)\}", template):
            self.b.text(template[position:m.start()])
            self.slot(m.group(1))
            position = m.end()
        self.b.text(template[position:])

    def label(self, label: str, named: tuple[str, str] | None = None) -> None:
        if named:
            full = f"{named[0]} {named[1]}"
            self.b.gold(full, "PERSON")
            self.labels.append(full)
            if full not in self.known:
                self.known.append(full)
        else:
            self.b.text(label)
            self.labels.append(label)
        self.b.text(": ")

    def build(self, sentences: list[str], negatives: list[str]) -> dict:
        rng = self.rng
        named_interviewer = rng.random() < 0.25
        named_participant = rng.random() < 0.2
        interviewer = rng.choice(NAMED_INTERVIEWERS) if named_interviewer else None
        i_label = rng.choice(INTERVIEWER_LABELS)
        p_label = rng.choice(PARTICIPANT_LABELS).format(n=rng.randrange(1, 20))
        if rng.random() < 0.15:                    # a header line with the date
            self.b.text("Interview, ")
            self.slot("DATE")
            self.b.text("\n\n")
        for k, sentence in enumerate(sentences):
            self.label(i_label, interviewer)
            self.sentence(rng.choice(INTERVIEWER))
            self.b.text("\n\n")
            self.label(p_label, self.people["P"] if named_participant else None)
            self.sentence(sentence)
            if k < len(negatives):
                self.b.text(" " + negatives[k])
            self.b.text("\n\n")
        return {"id": f"deid-{self.index:03d}", "text": self.b.value().rstrip("\n") + "\n",
                "spans": self.b.spans, "known_names": self.known, "labels":
                list(dict.fromkeys(self.labels))}


_MARK = re.compile(r"\[([^\[\]|]+)\|([A-Z]+)\]")


def hard_records() -> list[dict]:
    """The hand-written hard subset (:data:`HARD`) as records with gold spans."""
    records = []
    for i, entry in enumerate(HARD, start=1):
        known: list[str] = []
        if entry.startswith("known:"):
            line, _, entry = entry.partition("\n")
            known = [n.strip() for n in line[6:].split(";") if n.strip()]
        b = Builder()
        position = 0
        for m in _MARK.finditer(entry):
            b.text(entry[position:m.start()])
            b.gold(m.group(1), m.group(2))
            position = m.end()
        b.text(entry[position:])
        text = b.value().rstrip("\n") + "\n"
        labels = list(dict.fromkeys(m.group(1) for m in
                                    re.finditer(r"^([^:\n]+):", text, re.MULTILINE)))
        records.append({"id": f"hard-{i:02d}", "subset": "hard", "text": text,
                        "spans": b.spans, "known_names": known, "labels": labels})
    return records


def make(n_records: int = 110) -> list[dict]:
    rng = random.Random(SEED)
    pool: list[str] = []
    negatives: list[str] = []
    records = []
    for i in range(n_records):
        if len(pool) < 3:
            pool += rng.sample(PARTICIPANT, len(PARTICIPANT))
        if len(negatives) < 2:
            negatives += rng.sample(NEGATIVE, len(NEGATIVE))
        k = rng.choice([2, 3, 3, 4])
        sentences, pool = pool[:k], pool[k:]
        m = rng.choice([0, 1, 2])
        neg, negatives = negatives[:m], negatives[m:]
        records.append(Record(rng, i + 1).build(sentences, neg))
    return records


def check(record: dict) -> None:
    for span in record["spans"]:
        assert record["text"][span["start"]:span["end"]] == span["text"], span


def main() -> None:
    records = make()
    hard = hard_records()
    for r in records + hard:
        check(r)
    out = ROOT / "bench" / "deid" / "testset.jsonl"
    small = ROOT / "tests" / "data" / "deid_small.jsonl"
    small.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records + hard),
                   encoding="utf-8")
    small.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                             for r in records[::3] + hard), encoding="utf-8")
    from collections import Counter

    for name, subset in (("template", records), ("hard", hard)):
        counts = Counter(s["type"] for r in subset for s in r["spans"])
        print(f"{name}: {len(subset)} records, {sum(counts.values())} gold identifiers: "
              + ", ".join(f"{t} {n}" for t, n in sorted(counts.items())))
    print(f"wrote {out.relative_to(ROOT)} and {small.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
