//! Any cgroup path attributes without panicking, and every path built the way the kubelet and the
//! runtimes build them attributes back to the pod and container it was built from.

use kubebid_sensor::cgroup::{Attribution, Qos, Runtime, attribute, path_in_proc};
use proptest::prelude::*;

fn hex(n: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(b"0123456789abcdef".to_vec()), n)
        .prop_map(|v| String::from_utf8(v).unwrap_or_default())
}

fn uid() -> impl Strategy<Value = String> {
    (hex(8), hex(4), hex(4), hex(4), hex(12))
        .prop_map(|(a, b, c, d, e)| format!("{a}-{b}-{c}-{d}-{e}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_path_attributes(path in ".{0,300}") {
        let _ = attribute(&path);
        let _ = path_in_proc(&path);
    }

    #[test]
    fn any_path_of_segments_attributes(segs in proptest::collection::vec("[a-z0-9_.:-]{0,80}", 0..8)) {
        let _ = attribute(&format!("/{}", segs.join("/")));
    }

    #[test]
    fn built_paths_attribute_back(
        uid in uid(),
        id in hex(64),
        systemd in any::<bool>(),
        qos in 0usize..3,
        runtime in 0usize..5,
        prefix in proptest::option::of("/system.slice/[a-z]{1,10}.service"),
    ) {
        let (qos, qname) = [(Qos::Guaranteed, ""), (Qos::Burstable, "burstable"), (Qos::BestEffort, "besteffort")][qos];
        let rt = [Runtime::Containerd, Runtime::CriO, Runtime::CriOMonitor, Runtime::Docker, Runtime::Kata][runtime];
        let path = if systemd {
            let u = uid.replace('-', "_");
            let (qs, pod) = if qname.is_empty() {
                (String::new(), format!("kubepods-pod{u}.slice"))
            } else {
                (format!("/kubepods-{qname}.slice"), format!("kubepods-{qname}-pod{u}.slice"))
            };
            let c = match rt {
                Runtime::Containerd => format!("cri-containerd-{id}.scope"),
                Runtime::CriO => format!("crio-{id}.scope"),
                Runtime::CriOMonitor => format!("crio-conmon-{id}.scope"),
                Runtime::Docker => format!("docker-{id}.scope"),
                _ => format!("kata_{id}"),
            };
            format!("{}/kubepods.slice{qs}/{pod}/{c}", prefix.clone().unwrap_or_default())
        } else {
            let qs = if qname.is_empty() { String::new() } else { format!("/{qname}") };
            let c = if rt == Runtime::Kata { format!("kata_{id}") } else { id.clone() };
            format!("{}/kubepods{qs}/pod{uid}/{c}", prefix.clone().unwrap_or_default())
        };
        let want_rt = if !systemd && rt != Runtime::Kata { Runtime::Unknown } else { rt };
        prop_assert_eq!(
            attribute(&path),
            Attribution::Container { pod_uid: uid, qos, container_id: id, runtime: want_rt },
            "{}", path
        );
    }
}
