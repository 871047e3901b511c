//! `kdump.conf` on arbitrary text: errors, never panics; and every configuration the builder
//! accepts gives a capture plan that the capture init reads back unchanged (the builder must
//! never write a plan the init refuses).
#![no_main]
use libfuzzer_sys::fuzz_target;
use rkdump_init::plan::Plan;
use rkdump_mkinitrd::config::KdumpConfig;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(cfg) = KdumpConfig::parse(&text) else {
        return;
    };
    let plan = cfg.to_plan();
    let rendered = plan.render();
    match Plan::parse(&rendered) {
        Ok(back) => assert_eq!(back, plan, "plan changed on the way back:\n{rendered}"),
        Err(e) => panic!("the init cannot read the plan the builder writes ({e}):\n{rendered}"),
    }
});
