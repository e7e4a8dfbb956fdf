"""The lazy directory: members learned from verified tokens first, corrected by events later."""
