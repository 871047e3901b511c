//! rkdump-vmcore (work in progress).
