//! Kernel log extraction from the printk ring buffer (work in progress).
