"""`tracekeeper web`: a local, read-only viewer of the trail (server.py: HTTP; views.py: pages;
loader.py: the transcripts behind them). Templates and the stylesheet are package data."""
