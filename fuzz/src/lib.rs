//! The fuzz targets' checks, in a library so each target is one line.
pub mod checks;
