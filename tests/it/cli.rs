//! The binary, run as a user would.
