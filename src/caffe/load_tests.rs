// Tests follow in the next commits.
