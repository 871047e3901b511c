//! rkdump-init: the capture-side program that runs as PID 1 in the capture kernel.
//!
//! Pipeline: mount the API filesystems -> load the plan's modules -> wait for the target device
//! -> mount it -> save the dump -> final action. The plan types ([`plan`]) are the input contract
//! between the image builder (`mkinitrd`) and this program.

pub mod plan;
