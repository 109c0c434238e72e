//! What a user gives `fleetbus create work -f` (YAML or JSON: objects, a `List`, an OCM
//! ManifestWork) and `--rules-file`: parsed by the CLI, then checked by the hub as it would
//! arrive; the canonical form decodes back to the same manifests. Input: text.

#![no_main]

use fleetbus_cli::{msa, work::input};
use fleetbus_hub::work_spec;
use fleetbus_schema::manifests;
use fleetbus_schema::v1::ManifestWork;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = input::parse("fuzz.yaml", text) {
        let encoded = manifests::canonical(&parsed.manifests);
        if let Ok(checked) = work_spec::validate_manifests(&encoded) {
            assert_eq!(checked, parsed.manifests);
        }
        let work = ManifestWork {
            name: "w".into(),
            cluster: "cluster1".into(),
            delete_option: parsed.delete_option,
            manifest_configs: parsed.manifest_configs,
            ..Default::default()
        };
        let _ = work_spec::validate(&work);
    }
    let _ = msa::parse_rules(text);
});
