"""Outputs and run records: the one home of what a command leaves on disk.

:mod:`.atomic` writes files under a temporary name and renames them; :mod:`.lock` keeps two runs
out of one output folder; :mod:`.records` decides, before any work, whether outputs exist and
whether a finished run may be skipped, and writes and reads ``run.json``.
"""
