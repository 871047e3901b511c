//! rkdump-qemu (work in progress).
