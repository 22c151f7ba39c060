//! Placeholder: this crate only pins the `lua-src` package (see Cargo.toml).
