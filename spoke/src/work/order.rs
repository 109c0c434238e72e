//! The order in which manifests are applied (OCM's kind ranks): what others depend on first,
//! webhooks last, unknown kinds (custom resources) after everything; spec order within a rank.
//! Deletion runs in the reverse order.

/// Rank of `kind`; lower applies first.
pub fn rank(kind: &str) -> u8 {
    match kind {
        "Namespace"
        | "CustomResourceDefinition"
        | "StorageClass"
        | "PersistentVolume"
        | "PriorityClass" => 0,
        "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding" => 1,
        "ServiceAccount"
        | "ResourceQuota"
        | "LimitRange"
        | "PodDisruptionBudget"
        | "NetworkPolicy" => 2,
        "Secret" | "ConfigMap" | "PersistentVolumeClaim" => 3,
        "Service" => 4,
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job"
        | "CronJob"
        | "Pod"
        | "Ingress"
        | "HorizontalPodAutoscaler" => 5,
        "MutatingWebhookConfiguration"
        | "ValidatingWebhookConfiguration"
        | "APIService"
        | "ValidatingAdmissionPolicy"
        | "ValidatingAdmissionPolicyBinding" => 6,
        _ => 7,
    }
}

/// Indexes of `kinds` in apply order (stable within a rank).
pub fn apply_order(kinds: &[&str]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..kinds.len()).collect();
    order.sort_by_key(|&i| rank(kinds[i]));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_and_crds_first_custom_resources_last() {
        let kinds = [
            "Widget",
            "Deployment",
            "ConfigMap",
            "Namespace",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "ConfigMap",
        ];
        assert_eq!(apply_order(&kinds), vec![3, 5, 4, 2, 6, 1, 0]);
    }
}
