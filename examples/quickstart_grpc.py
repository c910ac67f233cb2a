"""The seed README's gRPC-mode quickstart, exactly as written there."""
import asyncio

from node_comm import GrpcTransportConfig, Node, NodeConfig, TransportConfig


async def main():
    # 节点 1 配置
    config1 = NodeConfig(
        node_id="node_1",
        transport=TransportConfig(
            mode="grpc",
            grpc=GrpcTransportConfig(host="0.0.0.0", port=50051),
        ),
    )

    # 节点 2 配置
    config2 = NodeConfig(
        node_id="node_2",
        transport=TransportConfig(
            mode="grpc",
            grpc=GrpcTransportConfig(host="0.0.0.0", port=50052),
        ),
    )

    node1 = Node("node_1", config1)
    node2 = Node("node_2", config2)

    async def echo(payload, ctx):
        return {"echo": payload}

    node2.register("echo", echo)

    await node1.start()
    await node2.start()

    # gRPC 模式需要指定地址
    await node1.connect("node_2", "127.0.0.1:50052")

    result = await node1.call("node_2", "echo", {"msg": "hello"})
    print(f"Result: {result}")

    await node1.stop()
    await node2.stop()

asyncio.run(main())
