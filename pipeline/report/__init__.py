"""What a run shows the team: the HTML report, its templates and plots.
"""
