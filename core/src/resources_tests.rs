//! Unit tests of the resource readings: parsers on fixed texts, `Sources` on fixture trees and
//! on this machine, and the sampler's publishing.

use std::fs;

use super::*;
use crate::resources::GpuInUse;

const MEMINFO: &str = "MemTotal:       16000000 kB\nMemFree:         1000000 kB\n\
                       MemAvailable:    4000000 kB\nBuffers:          100 kB\n";

#[test]
fn meminfo_gives_total_and_available_in_bytes() {
    let (total, available) = parse_meminfo(MEMINFO).expect("parsed");
    assert_eq!(total, 16_000_000.0 * 1024.0);
    assert_eq!(available, 4_000_000.0 * 1024.0);
    assert_eq!(parse_meminfo("MemTotal: 10 kB\n"), None, "no MemAvailable");
}

#[test]
fn the_memory_cgroup_is_found_in_v1_and_v2_listings() {
    let v1 = "9:name=systemd:/\n4:memory:/pod/abc\n1:cpu,cpuacct:/\n0::/\n";
    assert_eq!(parse_cgroup_path(v1), Some(("/pod/abc", false)));
    let joined = "3:cpuacct,memory:/x\n";
    assert_eq!(parse_cgroup_path(joined), Some(("/x", false)));
    assert_eq!(
        parse_cgroup_path("0::/kubepods/p1\n"),
        Some(("/kubepods/p1", true))
    );
    assert_eq!(parse_cgroup_path("1:cpu:/\n"), None);
}

#[test]
fn the_binding_limit_is_the_smaller_of_cgroup_and_machine() {
    let machine = Some((1000.0, 600.0)); // 40 % used
    assert_eq!(memory_fraction(machine, None), Some(0.4));
    // A cgroup limit below the machine binds.
    assert_eq!(memory_fraction(machine, Some((450.0, 500.0))), Some(0.9));
    // v1 writes "no limit" as a huge number: the machine binds.
    let unlimited = cgroup_usage("200", "9223372036854771712");
    assert_eq!(memory_fraction(machine, unlimited), Some(0.4));
    // v2 writes "max": no cgroup limit.
    assert_eq!(cgroup_usage("200", "max\n"), None);
    assert_eq!(memory_fraction(None, None), None);
    assert_eq!(memory_fraction(None, Some((900.0, 1000.0))), Some(0.9));
}

#[test]
fn rss_and_nvidia_smi_lines_parse() {
    assert_eq!(
        parse_rss("Name:\tkbatch\nVmRSS:\t  2048 kB\n"),
        Some(2048 * 1024)
    );
    assert_eq!(parse_rss("Name:\tkbatch\n"), None);
    assert_eq!(
        parse_nvidia_smi("37, 20390, 81559\n"),
        Some((0.37, 20390.0 / 81559.0))
    );
    assert_eq!(parse_nvidia_smi("[N/A], 1, 2"), None);
    assert_eq!(parse_nvidia_smi("5, 1"), None);
}

/// A fake `/proc` and cgroup tree holding `limit` as the v2 `memory.max`.
fn fixture(limit: &str) -> (tempfile::TempDir, Sources) {
    let dir = tempfile::tempdir().expect("tempdir");
    let proc_root = dir.path().join("proc");
    let cg = dir.path().join("cg/kubepods/p1");
    fs::create_dir_all(proc_root.join("self")).expect("mkdir");
    fs::create_dir_all(&cg).expect("mkdir");
    fs::write(proc_root.join("meminfo"), MEMINFO).expect("write");
    fs::write(proc_root.join("self/status"), "VmRSS:\t100 kB\n").expect("write");
    fs::write(proc_root.join("self/cgroup"), "0::/kubepods/p1\n").expect("write");
    fs::write(cg.join("memory.current"), "300\n").expect("write");
    fs::write(cg.join("memory.max"), limit).expect("write");
    let sources = Sources {
        proc_root,
        cgroup_root: dir.path().join("cg"),
        gpu: GpuInUse::none(),
    };
    (dir, sources)
}

#[test]
fn sources_read_the_cgroup_limit_when_set_and_the_machine_otherwise() {
    let (_dir, limited) = fixture("400\n");
    assert_eq!(limited.host(), (Some(0.75), Some(100 * 1024)));
    let (_dir, unlimited) = fixture("max\n");
    assert_eq!(unlimited.host(), (Some(0.75), Some(100 * 1024)));
    let (_dir, mut broken) = fixture("max\n");
    broken.proc_root = "/nonexistent".into();
    assert_eq!(
        broken.host(),
        (None, None),
        "unreadable is unknown, not zero"
    );
}

#[test]
fn this_machine_reports_its_memory_and_rss() {
    let (memory, rss) = Sources::host_with(GpuInUse::none()).host();
    let m = memory.expect("procfs is readable here");
    assert!(m > 0.0 && m < 1.0, "fraction {m}");
    assert!(
        rss.expect("rss") > 1024 * 1024,
        "a test process holds over 1 MiB"
    );
}

#[tokio::test]
async fn the_sampler_publishes_until_cancelled_and_drops_a_missing_gpu() {
    let (_dir, mut sources) = fixture("400\n");
    // A device nvidia-smi cannot answer for (or no nvidia-smi at all): the GPU stays unknown.
    // The probe is asked at every sample: the device in use can change (a fallback to CPU).
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = asked.clone();
    sources.gpu = GpuInUse::new(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Some(9_999)
    });
    let (tx, mut rx) = watch::channel(Utilization::default());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run_sampler(
        sources,
        watch::channel(Duration::from_millis(100)).1,
        tx,
        cancel.clone(),
    ));
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(10), rx.changed())
            .await
            .expect("a reading within 10 s")
            .expect("sampler alive");
        let u = *rx.borrow_and_update();
        assert_eq!(u.host_memory, Some(0.75));
        assert_eq!(u.memory(), Some(0.75));
        assert_eq!((u.gpu, u.gpu_memory), (None, None));
    }
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("stops when cancelled")
        .expect("no panic");
    assert!(
        asked.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "asked per sample"
    );
}

#[tokio::test(start_paused = true)]
async fn a_reloaded_sampling_period_applies_at_once() {
    let (_dir, mut sources) = fixture("400\n");
    sources.gpu = GpuInUse::new(|| None);
    let (tx, mut rx) = watch::channel(Utilization::default());
    let readings = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = readings.clone();
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            rx.borrow_and_update();
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let (period, period_rx) = watch::channel(Duration::from_secs(10));
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run_sampler(sources, period_rx, tx, cancel.clone()));
    let count = || readings.load(std::sync::atomic::Ordering::SeqCst);
    // At 0, 10 and 20 s.
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(count(), 3);
    // Reloaded to 1 s: one reading at the change, then one a second.
    period.send(Duration::from_secs(1)).unwrap();
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    assert_eq!(count(), 3 + 5);
    cancel.cancel();
    task.await.unwrap();
}

#[test]
fn batch_memory_is_the_fuller_of_host_and_gpu() {
    let u = Utilization {
        host_memory: Some(0.2),
        gpu_memory: Some(0.9),
        ..Utilization::default()
    };
    assert_eq!(u.memory(), Some(0.9));
    assert_eq!(Utilization::default().memory(), None);
}
