//! wrongcontract: the smallest volume component for `berth:plugin@1.0.0`, a
//! contract major version the 0.x host does not speak. It exists so the
//! host's tests can check that such a component is refused at install.
//! Only the wasm32 build has content.

#![cfg(target_arch = "wasm32")]

wit_bindgen::generate!({
    inline: r#"
        package berth:plugin@1.0.0;

        interface types {
            type json = string;
            variant driver-error {
                not-found(string),
                conflict(string),
                invalid-argument(string),
                unsupported(string),
                failed(string),
            }
        }

        interface host {
            enum level { error, warn, info, debug }
            log: func(level: level, message: string);
            settings: func() -> list<tuple<string, string>>;
        }

        interface volume-driver {
            use types.{json, driver-error};
            capabilities: func() -> json;
            create: func(request: json) -> result<json, driver-error>;
            remove: func(name: string) -> result<_, driver-error>;
            mount: func(name: string, caller-id: string) -> result<json, driver-error>;
            unmount: func(name: string, caller-id: string) -> result<_, driver-error>;
            path: func(name: string) -> result<option<string>, driver-error>;
            get: func(name: string) -> result<json, driver-error>;
            %list: func() -> result<json, driver-error>;
        }

        world volume-plugin {
            import host;
            export volume-driver;
        }
    "#,
    world: "volume-plugin",
});

use berth::plugin::types::DriverError;
use exports::berth::plugin::volume_driver::Guest;

struct Wrong;

fn nothing<T>() -> Result<T, DriverError> {
    Err(DriverError::Unsupported("this component speaks berth:plugin@1.0.0".into()))
}

impl Guest for Wrong {
    fn capabilities() -> String {
        r#"{"scope":"local"}"#.into()
    }
    fn create(_request: String) -> Result<String, DriverError> {
        nothing()
    }
    fn remove(_name: String) -> Result<(), DriverError> {
        nothing()
    }
    fn mount(_name: String, _caller_id: String) -> Result<String, DriverError> {
        nothing()
    }
    fn unmount(_name: String, _caller_id: String) -> Result<(), DriverError> {
        nothing()
    }
    fn path(_name: String) -> Result<Option<String>, DriverError> {
        nothing()
    }
    fn get(_name: String) -> Result<String, DriverError> {
        nothing()
    }
    fn list() -> Result<String, DriverError> {
        nothing()
    }
}

export!(Wrong);
