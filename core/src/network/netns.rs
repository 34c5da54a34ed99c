//! Container network namespaces bind-mounted at `<run>/netns/<id>`, and
//! running code inside one.
