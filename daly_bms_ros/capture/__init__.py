"""Recording the conversation with a BMS, and reading recordings back (see ``format``)."""
