// TensorRT IPluginV3 "SpatialCorrelation" (version "1", namespace "semshare"). See README.md for the contract.
#pragma once

#include "NvInferRuntime.h"
#include "common/fields.h"

#include <cstdint>
#include <string>

namespace semshare::plugin
{

//! The plugin's attributes, as in semshare/ops/contracts.py (SPATIAL_CORRELATION).
struct SpatialCorrelationParams
{
    int32_t patchSize{9};
    int32_t kernelSize{1};
    int32_t stride{1};
    int32_t dilationPatch{1};
    int32_t normalize{1};

    //! Parse and validate; throws PluginError naming the offending field.
    static SpatialCorrelationParams fromFields(nvinfer1::PluginFieldCollection const* fc);
    void validate() const;
};

class SpatialCorrelationPlugin : public nvinfer1::IPluginV3,
                                 public nvinfer1::IPluginV3OneCore,
                                 public nvinfer1::IPluginV3OneBuild,
                                 public nvinfer1::IPluginV3OneRuntime
{
public:
    explicit SpatialCorrelationPlugin(SpatialCorrelationParams const& params);
    SpatialCorrelationPlugin(SpatialCorrelationPlugin const& other);
    SpatialCorrelationPlugin& operator=(SpatialCorrelationPlugin const&) = delete;
    ~SpatialCorrelationPlugin() override = default;

    SpatialCorrelationParams const& params() const noexcept
    {
        return mParams;
    }

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t getNbOutputs() const noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    SpatialCorrelationParams mParams;
    FieldWriter mSerialized;
    //! SM count of the device, queried on the first enqueue and kept; not copied by clone(), so every instance
    //! (attachToContext gives one per execution context) asks its own device once.
    int mMultiProcessors{0};
};

class SpatialCorrelationCreator : public nvinfer1::IPluginCreatorV3One
{
public:
    SpatialCorrelationCreator();

    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

private:
    FieldNames mFieldNames;
};

} // namespace semshare::plugin
