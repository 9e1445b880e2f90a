"""A corpus of hostile checkpoint archives, written with tarfile, for the restore safety tests."""
