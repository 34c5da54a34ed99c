//! Volume drivers: `local` (directories under the data root, or any
//! mount(2) filesystem described by `type`/`device`/`o`, as Docker's).

pub mod local;

pub use local::LocalDriver;
