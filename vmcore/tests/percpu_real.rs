//! The free pages of the per-CPU lists, against the lists themselves as `crash` walks them.
//!
//! For every `$RKDUMP_VMCORES/*/vmcore` (see `writers_real.rs`), `crash` (with the debug vmlinux)
//! reads each zone's `per_cpu_pageset` on each CPU and lists every page linked on its
//! `lists[]`; the list index gives the block's order (Linux 6.1's `order_to_pindex`: three
//! migrate types per order 0..=3, then the pageblock-order lists). The classifier, which sees
//! only the struct pages and VMCOREINFO, must find every page of those blocks, and may add
//! only pages it proves unused next to them (counted, and bounded here).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use rkdump_vmcore::classify::{Classifier, ClassifyOptions, PageClass};
use rkdump_vmcore::{ElfVmcore, Pfn};

fn crash(vmlinux: &Path, core: &Path, dir: &Path, cmds: &str) -> String {
    let f = dir.join("cmds");
    std::fs::write(&f, format!("{cmds}quit\n")).unwrap();
    let out =
        Command::new("crash").arg("-s").arg("-i").arg(&f).arg(vmlinux).arg(core).stdin(Stdio::null()).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of each `$N = V` line of a `p` command, in order.
fn values(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.rsplit_once(" = ").map(|(_, v)| v.trim()))
        .filter_map(|v| match v.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => v.parse().ok(),
        })
        .collect()
}

/// (pfn, order) of every block on a per-CPU list, from crash.
fn percpu_blocks(vmlinux: &Path, core: &Path, dir: &Path, off_lru: u64) -> Vec<(u64, u32)> {
    const CPUS: usize = 64;
    const ZONES: usize = 5;
    let mut q = String::from("p/x vmemmap_base\np nr_cpu_ids\np node_data[0]->nr_zones\n");
    for c in 0..CPUS {
        q += &format!("p/x __per_cpu_offset[{c}]\n");
    }
    for z in 0..ZONES {
        q += &format!("p/x node_data[0]->node_zones[{z}].per_cpu_pageset\n");
    }
    q += "p nr_online_nodes\nstruct per_cpu_pages -o\n";
    let text = crash(vmlinux, core, dir, &q);
    let v = values(&text);
    assert!(v.len() >= 4 + CPUS + ZONES, "crash printed too little:\n{text}");
    let (vmemmap, cpus, zones) = (v[0], v[1] as usize, v[2] as usize);
    assert_eq!(v[3 + CPUS + ZONES], 1, "the test machine has one NUMA node");
    assert!(cpus <= CPUS && zones <= ZONES, "{cpus} CPUs, {zones} zones");
    // "   [24] struct list_head lists[14];"
    let (lists_off, nlists) = text
        .lines()
        .find_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix('[')?;
            let (off, decl) = rest.split_once(']')?;
            let n = decl.trim().strip_prefix("struct list_head lists[")?.strip_suffix("];")?;
            Some((off.parse::<u64>().ok()?, n.parse::<u64>().ok()?))
        })
        .unwrap_or_else(|| panic!("no lists[] in struct per_cpu_pages:\n{text}"));
    // 6.1: MIGRATE_PCPTYPES (3) lists per order 0..=PAGE_ALLOC_COSTLY_ORDER (3), then the THP
    // lists (order 9); another count means another kernel, whose rule this test must learn.
    assert!((12..=14).contains(&nlists), "{nlists} per-CPU lists: not Linux 6.1's layout");
    // `list ADDR` prints the head itself, then each entry: the heads delimit the lists.
    let mut q = String::new();
    let mut heads = std::collections::HashMap::new();
    for z in 0..zones {
        for c in 0..cpus {
            let pcp = v[3 + CPUS + z].wrapping_add(v[3 + c]);
            for i in 0..nlists {
                let head = pcp + lists_off + 16 * i;
                q += &format!("list {head:#x}\n");
                heads.insert(head, if i < 12 { (i / 3) as u32 } else { 9 });
            }
        }
    }
    let text = crash(vmlinux, core, dir, &q);
    let mut out = Vec::new();
    let mut order = None;
    for l in text.lines() {
        let Ok(a) = u64::from_str_radix(l.trim(), 16) else { continue };
        if let Some(&o) = heads.get(&a) {
            order = Some(o);
            continue;
        }
        let o = order.unwrap_or_else(|| panic!("entry {a:#x} before any list head:\n{text}"));
        assert!(a >= vmemmap + off_lru, "list entry {a:#x} is not a struct page");
        out.push(((a - off_lru - vmemmap) / 64, o));
    }
    out
}

#[test]
fn per_cpu_free_pages_match_the_lists_crash_walks() {
    let Some(cores) = rkdump_vmcore::mdf::real_vmcores() else { return };
    let dir = tempfile::tempdir().unwrap();
    for path in &cores {
        let core = ElfVmcore::open(path).unwrap();
        let Some(vml) = rkdump_vmcore::mdf::debug_vmlinux(path) else {
            eprintln!("SKIPPED: crash or the debug vmlinux is missing (run `make deps`)");
            return;
        };
        let off_lru = core.vmcoreinfo().and_then(|v| v.offset("page.lru")).unwrap();
        let blocks = percpu_blocks(&vml, path, dir.path(), off_lru);
        let truth: BTreeSet<u64> = blocks.iter().flat_map(|&(p, o)| p..p + (1u64 << o)).collect();

        let mut cls = Classifier::new(&core, core.vmcoreinfo(), ClassifyOptions::level(31));
        let max = cls.max_pfn().0;
        let mut ours = BTreeSet::new();
        let mut classes = vec![PageClass::Hole; 1 << 16];
        let mut s = 0;
        while s < max {
            let e = (s + (1 << 16)).min(max);
            let out = &mut classes[..(e - s) as usize];
            cls.classify_range(Pfn(s), Pfn(e), out).unwrap();
            ours.extend(
                out.iter().enumerate().filter(|(_, c)| **c == PageClass::FreePercpu).map(|(i, _)| s + i as u64),
            );
            s = e;
        }
        let missed: Vec<_> = truth.difference(&ours).take(10).collect();
        let extra = ours.difference(&truth).count();
        eprintln!(
            "{}: {} blocks, {} pages on the per-CPU lists; classifier: {} pages, {} of them not on a list, {} missed (first {:x?})",
            path.display(),
            blocks.len(),
            truth.len(),
            ours.len(),
            extra,
            truth.difference(&ours).count(),
            missed
        );
        assert!(!blocks.is_empty(), "crash found no per-CPU list entries");
        assert!(missed.is_empty(), "pages of per-CPU lists the classifier kept, first: {missed:x?}");
        // A page proven unused beside a listed block (or on compaction's list of isolated
        // free pages) is free too; on the test captures there is none, so many would mean the
        // proof took in pages it should not.
        assert!(extra <= 16 + truth.len() / 100, "{extra} pages classified per-CPU free that no list holds");
    }
}
