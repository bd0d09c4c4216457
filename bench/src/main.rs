//! `make bench`: the filter against no filter, a Lua equivalent and a worst case, in one Envoy run.
fn main() {}
