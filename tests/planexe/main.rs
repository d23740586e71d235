//! planexe stories
