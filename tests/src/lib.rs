//! End-to-end tests for Starling live in `tests/`; this library is empty.
