//! Cache partitions: the plan (exclusive, contiguous, sized by share, the node's minimum kept), its writes
//! into a resctrl tree laid out as the kernel's, and tenants' pods' threads placed from a kubelet-shaped
//! cgroup tree as pods come and go.

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use kubebid_node::checks::CacheInfo;
use kubebid_node::resctrl::{Resctrl, place_pods, plan, ways};
use proptest::prelude::*;

fn cache(bits: u32, closids: u32, min: u32) -> CacheInfo {
    CacheInfo {
        mount: "/sys/fs/resctrl".into(),
        closids,
        cbm_bits: bits,
        min_cbm_bits: min,
        mba: false,
    }
}

fn shares(s: &[(&str, u8)]) -> BTreeMap<String, u8> {
    s.iter().map(|(t, p)| ((*t).to_owned(), *p)).collect()
}

#[test]
fn ways_are_handed_out_from_the_top_and_the_node_keeps_the_rest() {
    let p = plan(&shares(&[("acme", 25), ("globex", 40)]), &cache(12, 16, 1));
    assert_eq!(p.partitions[0].tenant, "acme");
    assert_eq!(p.partitions[0].mask, 0xe00, "25% of 12 ways is 3");
    assert_eq!(p.partitions[1].mask, 0x1f0, "40% of 12 is 4.8: 5");
    assert_eq!(p.default_mask, 0x00f);
    assert!(p.refused.is_empty());
    // Too much: the later tenant (by name) is refused, the earlier keeps its ways.
    let p = plan(&shares(&[("a", 50), ("b", 50)]), &cache(12, 16, 2));
    assert_eq!(p.partitions.len(), 1);
    assert_eq!(p.partitions[0].mask, 0xfc0);
    assert_eq!(p.refused[0].0, "b");
    assert!(p.refused[0].1.contains("6 of 12 ways"), "{:?}", p.refused);
    // Classes of service run out before ways do.
    let p = plan(&shares(&[("a", 5), ("b", 5), ("c", 5)]), &cache(20, 3, 1));
    assert_eq!(p.partitions.len(), 2);
    assert!(p.refused[0].1.contains("no class of service"));
    assert_eq!(ways(1, 20, 2), 2, "never below the hardware's minimum");
}

proptest! {
    #[test]
    fn partitions_never_overlap_and_cover_the_cache(
        bits in 4u32..=20,
        min in 1u32..=3,
        closids in 1u32..=16,
        list in proptest::collection::btree_map("[a-z]{1,6}", 1u8..=90, 0..8),
    ) {
        let info = cache(bits, closids, min);
        let p = plan(&list, &info);
        let full = (1u64 << bits) - 1;
        let mut union = 0u64;
        for part in &p.partitions {
            prop_assert_eq!(union & part.mask, 0, "overlap");
            union |= part.mask;
            let shifted = part.mask >> part.mask.trailing_zeros();
            prop_assert_eq!(shifted & (shifted + 1), 0, "contiguous");
            prop_assert!(part.mask.count_ones() >= min);
        }
        prop_assert_eq!(union | p.default_mask, full);
        prop_assert_eq!(union & p.default_mask, 0);
        prop_assert!(p.default_mask.count_ones() >= min, "the node keeps its minimum");
        prop_assert_eq!(p.partitions.len() + p.refused.len(), list.len());
        prop_assert!(p.partitions.len() < closids.max(1) as usize || p.partitions.is_empty());
    }
}

#[test]
fn groups_are_written_exclusive_and_stale_ones_removed() {
    let node = common::full_node("resctrl");
    let root = node.path("/sys/fs/resctrl");
    std::fs::create_dir_all(root.join("kubebid-gone")).unwrap();
    std::fs::write(root.join("kubebid-gone/tasks"), "9\n").unwrap();
    std::fs::create_dir_all(root.join("someone-else")).unwrap();
    let r = Resctrl::new(&root);
    assert_eq!(r.cache_ids().unwrap(), vec!["0", "1"]);
    let p = plan(&shares(&[("acme", 25), ("globex", 40)]), &cache(12, 16, 1));
    r.apply(&p).unwrap();
    let read = |f: &str| std::fs::read_to_string(root.join(f)).unwrap();
    assert_eq!(read("schemata"), "L3:0=f;1=f\n");
    assert_eq!(read("kubebid-acme/schemata"), "L3:0=e00;1=e00\n");
    assert_eq!(read("kubebid-globex/schemata"), "L3:0=1f0;1=1f0\n");
    assert_eq!(read("kubebid-acme/mode"), "exclusive\n");
    assert!(
        !root.join("kubebid-gone").exists(),
        "a tenant without a share loses its group"
    );
    assert!(
        root.join("someone-else").exists(),
        "groups that are not KubeBid's stay"
    );
    assert_eq!(r.groups(), vec!["acme", "globex"]);
    // Applying again changes nothing.
    r.apply(&p).unwrap();
    assert_eq!(read("kubebid-acme/schemata"), "L3:0=e00;1=e00\n");
}

const UID_A: &str = "7a1b2c3d-4e5f-4a6b-8c7d-0123456789ab";
const UID_B: &str = "0b1b2c3d-4e5f-4a6b-8c7d-0123456789ab";
const UID_C: &str = "1c1b2c3d-4e5f-4a6b-8c7d-0123456789ab";

#[test]
fn a_tenants_pod_threads_are_placed_and_followed() {
    let node = common::full_node("place");
    let cg = node.path("/sys/fs/cgroup");
    let pod_dir = |uid: &str, qos: &str| {
        format!(
            "/sys/fs/cgroup/kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{}.slice",
            uid.replace('-', "_")
        )
    };
    let id = "a".repeat(64);
    // acme's pod: a container with two threads, and the pod's own slice with one.
    node.put(
        &format!(
            "{}/cri-containerd-{id}.scope/cgroup.threads",
            pod_dir(UID_A, "burstable")
        ),
        "101\n102\n",
    );
    node.put(
        &format!("{}/cgroup.procs", pod_dir(UID_A, "burstable")),
        "100\n",
    );
    // globex's pod (no share) and a pod of no tenant.
    node.put(
        &format!("{}/cgroup.threads", pod_dir(UID_B, "besteffort")),
        "200\n",
    );
    node.put(
        &format!("{}/cgroup.threads", pod_dir(UID_C, "besteffort")),
        "300\n",
    );
    let root = node.path("/sys/fs/resctrl");
    let r = Resctrl::new(&root);
    let p = plan(&shares(&[("acme", 25)]), &cache(12, 16, 1));
    r.apply(&p).unwrap();
    let planned: BTreeSet<String> = ["acme".to_owned()].into();
    let mut pods: BTreeMap<String, String> = BTreeMap::new();
    pods.insert(UID_A.into(), "acme-prod".into());
    pods.insert(UID_B.into(), "globex".into());
    pods.insert(UID_C.into(), "scratch".into());
    let tenant_of = |ns: &str| match ns {
        "acme-prod" => Some("acme".to_owned()),
        "globex" => Some("globex".to_owned()),
        _ => None,
    };
    let (moved, errors) = place_pods(&r, &cg, &pods, &tenant_of, &planned);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(moved, 3);
    assert_eq!(r.tasks("acme"), BTreeSet::from([100, 101, 102]));
    // Again: nothing new to move.
    assert_eq!(place_pods(&r, &cg, &pods, &tenant_of, &planned).0, 0);
    // A new thread in the pod, and a second acme pod starting: both followed.
    node.put(
        &format!(
            "{}/cri-containerd-{id}.scope/cgroup.threads",
            pod_dir(UID_A, "burstable")
        ),
        "101\n102\n103\n",
    );
    let uid_d = "2d1b2c3d-4e5f-4a6b-8c7d-0123456789ab";
    node.put(
        &format!(
            "/sys/fs/cgroup/kubepods.slice/kubepods-pod{}.slice/cgroup.threads",
            uid_d.replace('-', "_")
        ),
        "400\n",
    );
    pods.insert(uid_d.into(), "acme-prod".into());
    assert_eq!(place_pods(&r, &cg, &pods, &tenant_of, &planned).0, 2);
    assert_eq!(r.tasks("acme"), BTreeSet::from([100, 101, 102, 103, 400]));
    // The group of a tenant that was never planned is not made by placement.
    let planned_more: BTreeSet<String> = ["acme".to_owned(), "globex".to_owned()].into();
    let (_, errors) = place_pods(&r, &cg, &pods, &tenant_of, &planned_more);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("kubebid-globex: no such group")),
        "{errors:?}"
    );
}
