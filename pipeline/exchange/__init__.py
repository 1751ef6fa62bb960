"""Other tools' formats: human codes (tables, REFI-QDA projects) in, codebooks and
projects out.
"""
