//! placeholder while the build warms
