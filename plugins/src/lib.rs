//! berth-plugins: the plugin host. WebAssembly components and native dylibs
//! become drivers of the core's traits here (the plugin issue builds it).
