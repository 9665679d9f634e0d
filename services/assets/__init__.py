"""The assets service (AssetService). See README.md beside this file."""
