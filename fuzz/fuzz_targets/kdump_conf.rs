//! `kdump.conf` on arbitrary text: errors, never panics; and every configuration the builder
//! accepts gives a capture plan that the capture init reads back unchanged (the builder must
//! never write a plan the init refuses).
#![no_main]
use libfuzzer_sys::fuzz_target;
use rkdump_init::plan::{DeviceSpec, Plan, Target};
use rkdump_mkinitrd::config::KdumpConfig;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(cfg) = KdumpConfig::parse(&text) else {
        return;
    };
    // Without a target line the builder resolves one on the build machine: any will do here.
    let target = cfg
        .target
        .clone()
        .unwrap_or_else(|| Target { fstype: "ext4".into(), device: DeviceSpec::Path("/dev/vda1".into()) });
    let plan = cfg.to_plan(target, cfg.path.clone());
    let rendered = plan.render();
    match Plan::parse(&rendered) {
        Ok(back) => assert_eq!(back, plan, "plan changed on the way back:\n{rendered}"),
        Err(e) => panic!("the init cannot read the plan the builder writes ({e}):\n{rendered}"),
    }
});
