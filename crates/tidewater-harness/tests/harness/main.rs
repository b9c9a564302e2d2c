//! The harness's own tests in one test binary: each throwaway server kind in its module,
//! the checks both share in `checks`.

mod checks;

mod mariadb;
mod server;
