"""The AWS infrastructure template and the generator it comes from."""
