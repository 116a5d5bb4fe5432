"""Things that talk to the outside: the Hugging Face Hub, SQLite, the host, child processes."""
