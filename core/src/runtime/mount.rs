//! The mount executor: applies the `MountPlan`s drivers return.
