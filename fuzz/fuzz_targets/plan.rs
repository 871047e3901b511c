//! The capture init's plan parser on arbitrary text: errors, never panics; a plan it accepts
//! renders to text that parses to the same plan.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rkdump_init::plan::Plan;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(plan) = Plan::parse(&text) else {
        return;
    };
    let rendered = plan.render();
    match Plan::parse(&rendered) {
        Ok(back) => assert_eq!(back, plan, "plan changed on the way back:\n{rendered}"),
        Err(e) => panic!("a rendered plan does not parse ({e}):\n{rendered}"),
    }
});
