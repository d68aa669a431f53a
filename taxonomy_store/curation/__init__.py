"""Curation: prompt and pair edits with undo, the curators' review views, label-issue detection."""
