//! berth-sdk: what plugin authors depend on. The WIT contract and the
//! author-side traits arrive with the plugin issue.
