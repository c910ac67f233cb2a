"""The seed README's memory-mode quickstart, exactly as written there."""
import asyncio

from node_comm import Node, NodeConfig, TransportConfig


async def main():
    # 创建配置
    config1 = NodeConfig(
        node_id="coordinator",
        transport=TransportConfig(mode="memory"),
    )
    config2 = NodeConfig(
        node_id="participant",
        transport=TransportConfig(mode="memory"),
    )

    # 创建节点
    coordinator = Node("coordinator", config1)
    participant = Node("participant", config2)

    # 注册方法
    async def train(payload, ctx):
        epochs = payload.get("epochs", 1)
        return {"status": "completed", "loss": 0.01}

    participant.register("train", train)

    # 启动节点
    await coordinator.start()
    await participant.start()

    # 建立连接
    await coordinator.connect("participant")

    # 调用远程方法
    result = await coordinator.call("participant", "train", {"epochs": 10})
    print(f"Result: {result}")

    # 停止节点
    await coordinator.stop()
    await participant.stop()

asyncio.run(main())
