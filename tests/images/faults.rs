//! Fault-injection sweeps over image setup (`EXTMERGE_FAIL_AT_IMAGE_STEP=N`): the N-th
//! step of setting up disk images (loop device, dm-verity device, mount, staging tmpfs,
//! staging directory, attach) fails, for N = 1, 2, … until the merge gets through. After
//! each failure the merge must have failed naming the step, `/usr` must be the host's,
//! and no loop device, dm device, mount or staging directory may be left.

use crate::common::merge;
use extmerge::fault::Injector;
use extmerge::format::class::Class;

use crate::common::*;

/// Merges in-process with an opener whose image step `fault` fails: a leaked loop fd
/// or mount would stay visible here (a subprocess would have them closed at exit).
fn merge_failing_at(fx: &Fx, policy: Option<&str>, fault: usize) -> Result<(), String> {
    let mut op = opener(Class::Sysext, policy);
    op.set_faults(Injector::failing_at(fault));
    let r = merge::merge_with(&fx.opts(), Class::Sysext, &mut op);
    drop(op);
    r.map(drop).map_err(|e| e.to_string())
}

/// Sweeps the image steps of a merge of the installed images (which show
/// `/usr/share/<name>/hello.txt` when merged). At least `min_steps` steps must fail
/// before the merge gets through; `dm` are the dm devices the merge creates.
pub fn sweep(fx: &Fx, policy: Option<&str>, names: &[&str], dm: &[String], min_steps: usize) {
    let shown = |n: &str| format!("/usr/share/{n}/hello.txt");
    for n in 1..200 {
        let Err(err) = merge_failing_at(fx, policy, n) else {
            assert!(
                n > min_steps,
                "merge got through at step {n}, expected more than {min_steps} image steps"
            );
            for name in names {
                assert_eq!(
                    fx.read(&shown(name)).as_deref(),
                    Some(format!("hello from {name}\n").as_str())
                );
            }
            assert_eq!(merge::unmerge(&fx.opts(), Class::Sysext).unwrap(), ["/usr"]);
            fx.assert_clean(dm);
            eprintln!("image fault sweep: {} steps failed cleanly", n - 1);
            return;
        };
        let needle = format!("injected fault at image step {n} (");
        assert!(err.contains(&needle), "step {n}: {err:?} lacks {needle:?}");
        for name in names {
            assert!(
                !fx.path(&shown(name)).exists(),
                "step {n}: {name} visible after a failed merge"
            );
        }
        assert_eq!(
            fx.read("/usr/bin/host-tool").as_deref(),
            Some("host tool\n"),
            "step {n}: host /usr"
        );
        assert!(
            !fx.path("/usr/.systemd-sysext").exists(),
            "step {n}: merge metadata left"
        );
        fx.assert_clean(dm);
    }
    panic!("the merge never got through");
}

/// Three images over loop devices (a bare erofs, a squashfs and a GPT disk image with
/// a `/usr` partition): every loop device, mount and staging step fails once.
#[test]
fn every_image_step_fails_cleanly() {
    ns_test(|base| {
        let fx = Fx::new(base);
        if fx.install_loop_images().is_none() {
            return;
        }
        // Per image: loop device, mount, staging directory, attach; plus the staging tmpfs.
        sweep(&fx, None, &["erofs-ext", "squash-ext", "ddi-ext"], &[], 13);
    });
}
