//! rkdump-init: the capture-side program that runs as PID 1 in the capture kernel.
//!
//! Pipeline ([`boot::run`]): mount the API filesystems -> log to `/dev/kmsg` -> check
//! `/proc/vmcore` -> read the [`plan`] -> load its modules ([`modules`]) -> wait for the target
//! device, probing superblocks ourselves ([`probe`]) -> mount it -> run the save steps
//! ([`save`]: today an unfiltered `/proc/vmcore` copy) -> unmount, sync, final action.
//!
//! Every system call goes through the [`sys::Sys`] trait: [`sys::real::RealSys`] is the kernel
//! (the crate's only `unsafe`), [`sys::fake::FakeSys`] an in-memory recorder, so the boot
//! sequence is unit-tested as a sequence of calls without root. The plan types are the input
//! contract between the image builder (`mkinitrd`) and this program.

pub mod boot;
pub mod log;
pub mod modules;
pub mod plan;
pub mod probe;
pub mod save;
pub mod sys;
pub mod watchdog;
