//! rkdump-mkinitrd (work in progress).
