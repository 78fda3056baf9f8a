"""A run's figures as people and programs read them: one view in display units (view.py),
rendered as text (text.py), CSV and JSON files (files.py), and JUnit, Markdown and GitHub
workflow commands (ci.py)."""
