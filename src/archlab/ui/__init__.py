"""`archlab ui`: the memory in a web browser, on this machine."""
