//! rkdump-vmcore: read, classify and write vmcores (work in progress).

pub mod dmesg;
