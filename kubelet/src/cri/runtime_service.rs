//! CRI `runtime.v1.RuntimeService`. This part of berthlet answers `Version` and
//! `Status`; pod sandboxes and containers are the next issue's, and until then
//! every other method says so with `Unimplemented`.

use std::pin::Pin;

use k8s_cri::v1::runtime_service_server::RuntimeService;
use k8s_cri::v1::*;
use tonic::{Request, Response, Status};

/// What `Version` reports as the runtime's name.
pub const RUNTIME_NAME: &str = "berth";
/// The CRI API version served.
pub const RUNTIME_API_VERSION: &str = "v1";
/// The kubelet's own API version string, as containerd reports it.
const KUBELET_API_VERSION: &str = "0.1.0";

/// Why NetworkReady is false: CNI wiring comes with pod sandboxes.
pub const NETWORK_NOT_READY_REASON: &str = "NetworkPluginNotConfigured";

#[derive(Debug, Clone, Default)]
pub struct RuntimeServiceImpl;

fn not_yet(method: &str) -> Status {
    Status::unimplemented(format!(
        "runtime.v1.RuntimeService/{method} is not served yet: pod sandboxes and containers come in berthlet part 2 \
         (this berthlet serves Version, Status and the ImageService)"
    ))
}

/// Writes the service impl: the methods given in braces, plus one answering
/// Unimplemented (naming itself) for each method of the next issue. One
/// `async_trait` impl must see every method, hence the whole impl in the macro.
macro_rules! runtime_service {
    ({ $($own:tt)* } $($fn:ident($req:ident) -> $resp:ident = $name:literal;)*) => {
        #[tonic::async_trait]
        impl RuntimeService for RuntimeServiceImpl {
            $($own)*
            $(
                async fn $fn(&self, _request: Request<$req>) -> Result<Response<$resp>, Status> {
                    Err(not_yet($name))
                }
            )*
        }
    };
}

runtime_service! {
{
    async fn version(&self, _request: Request<VersionRequest>) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            version: KUBELET_API_VERSION.into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: RUNTIME_API_VERSION.into(),
        }))
    }

    async fn status(&self, _request: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let conditions = vec![
            RuntimeCondition { r#type: "RuntimeReady".into(), status: true, reason: String::new(), message: String::new() },
            RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: false,
                reason: NETWORK_NOT_READY_REASON.into(),
                message: "berthlet does not configure pod networks yet (CNI comes with pod sandboxes)".into(),
            },
        ];
        Ok(Response::new(StatusResponse {
            status: Some(RuntimeStatus { conditions }),
            ..Default::default()
        }))
    }

    type GetContainerEventsStream =
        Pin<Box<dyn tokio_stream::Stream<Item = Result<ContainerEventResponse, Status>> + Send + 'static>>;

    async fn get_container_events(
        &self,
        _request: Request<GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        Err(not_yet("GetContainerEvents"))
    }
}
        run_pod_sandbox(RunPodSandboxRequest) -> RunPodSandboxResponse = "RunPodSandbox";
        stop_pod_sandbox(StopPodSandboxRequest) -> StopPodSandboxResponse = "StopPodSandbox";
        remove_pod_sandbox(RemovePodSandboxRequest) -> RemovePodSandboxResponse = "RemovePodSandbox";
        pod_sandbox_status(PodSandboxStatusRequest) -> PodSandboxStatusResponse = "PodSandboxStatus";
        list_pod_sandbox(ListPodSandboxRequest) -> ListPodSandboxResponse = "ListPodSandbox";
        create_container(CreateContainerRequest) -> CreateContainerResponse = "CreateContainer";
        start_container(StartContainerRequest) -> StartContainerResponse = "StartContainer";
        stop_container(StopContainerRequest) -> StopContainerResponse = "StopContainer";
        remove_container(RemoveContainerRequest) -> RemoveContainerResponse = "RemoveContainer";
        list_containers(ListContainersRequest) -> ListContainersResponse = "ListContainers";
        container_status(ContainerStatusRequest) -> ContainerStatusResponse = "ContainerStatus";
        update_container_resources(UpdateContainerResourcesRequest) -> UpdateContainerResourcesResponse = "UpdateContainerResources";
        reopen_container_log(ReopenContainerLogRequest) -> ReopenContainerLogResponse = "ReopenContainerLog";
        exec_sync(ExecSyncRequest) -> ExecSyncResponse = "ExecSync";
        exec(ExecRequest) -> ExecResponse = "Exec";
        attach(AttachRequest) -> AttachResponse = "Attach";
        port_forward(PortForwardRequest) -> PortForwardResponse = "PortForward";
        container_stats(ContainerStatsRequest) -> ContainerStatsResponse = "ContainerStats";
        list_container_stats(ListContainerStatsRequest) -> ListContainerStatsResponse = "ListContainerStats";
        pod_sandbox_stats(PodSandboxStatsRequest) -> PodSandboxStatsResponse = "PodSandboxStats";
        list_pod_sandbox_stats(ListPodSandboxStatsRequest) -> ListPodSandboxStatsResponse = "ListPodSandboxStats";
        update_runtime_config(UpdateRuntimeConfigRequest) -> UpdateRuntimeConfigResponse = "UpdateRuntimeConfig";
        checkpoint_container(CheckpointContainerRequest) -> CheckpointContainerResponse = "CheckpointContainer";
        list_metric_descriptors(ListMetricDescriptorsRequest) -> ListMetricDescriptorsResponse = "ListMetricDescriptors";
        list_pod_sandbox_metrics(ListPodSandboxMetricsRequest) -> ListPodSandboxMetricsResponse = "ListPodSandboxMetrics";
        runtime_config(RuntimeConfigRequest) -> RuntimeConfigResponse = "RuntimeConfig";
}
