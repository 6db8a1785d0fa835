//! Bindings generated from `wit/plugin.wit`, used by [`crate::export!`] and the backend.
//! Not part of the public API.

wit_bindgen::generate!({
    path: "../wit",
    world: "plugin",
    pub_export_macro: true,
    export_macro_name: "export_plugin",
    default_bindings_module: "switchyard_plugin_sdk::bindings",
    runtime_path: "switchyard_plugin_sdk::bindings::wit_bindgen::rt",
});

pub use wit_bindgen;
