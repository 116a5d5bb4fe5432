"""Pure logic: no network, no database, no Discord. Everything here is a function of its arguments."""
