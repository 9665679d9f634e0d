"""The sealer service (SealerService). See README.md beside this file."""
