//! Docker's `json-file` log format: one JSON object per line,
//! `{"log":"...","stream":"stdout","time":"RFC3339Nano"}`, with rotation
//! (`<log>.1`, `<log>.2`, ...). The shim writes it; `logs` reads it.
