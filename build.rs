//! Links libpython with an rpath so the binary runs without LD_LIBRARY_PATH, and records the
//! build-time interpreter (and its version) as the last fallback when no virtualenv is found at
//! run time.
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
    let config = pyo3_build_config::get();
    if let Some(exe) = config.executable() {
        println!("cargo:rustc-env=RUSTYBT_BUILD_PYTHON={exe}");
    }
    // The libpython this binary links: a virtualenv of another version cannot be embedded.
    let version = config.version();
    println!(
        "cargo:rustc-env=RUSTYBT_BUILD_PYTHON_VERSION={}.{}",
        version.major, version.minor
    );
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
