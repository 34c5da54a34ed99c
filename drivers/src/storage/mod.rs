//! Storage drivers: `overlay` (default) and `vfs` (full copies).
