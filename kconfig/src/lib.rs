//! rkdump-kconfig (work in progress).
