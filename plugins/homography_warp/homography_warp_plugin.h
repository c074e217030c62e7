// TensorRT IPluginV3 "HomographyWarp" (version "1", namespace "semshare"). See README.md for the contract.
#pragma once

#include "NvInferRuntime.h"
#include "common/fields.h"

#include <cstdint>
#include <string>

namespace semshare::plugin
{

//! The plugin's attributes, as in semshare/ops/contracts.py (HOMOGRAPHY_WARP).
struct HomographyWarpParams
{
    int32_t outHeight{0};   //!< required, >= 2
    int32_t outWidth{0};    //!< required, >= 2
    int32_t alignCorners{1};
    std::string paddingMode{"zeros"};

    //! Parse and validate; throws PluginError naming the offending field.
    static HomographyWarpParams fromFields(nvinfer1::PluginFieldCollection const* fc);
    void validate() const;
};

class HomographyWarpPlugin : public nvinfer1::IPluginV3,
                                 public nvinfer1::IPluginV3OneCore,
                                 public nvinfer1::IPluginV3OneBuild,
                                 public nvinfer1::IPluginV3OneRuntime
{
public:
    explicit HomographyWarpPlugin(HomographyWarpParams const& params);
    HomographyWarpPlugin(HomographyWarpPlugin const& other);
    HomographyWarpPlugin& operator=(HomographyWarpPlugin const&) = delete;
    ~HomographyWarpPlugin() override = default;

    HomographyWarpParams const& params() const noexcept
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
    HomographyWarpParams mParams;
    FieldWriter mSerialized;
};

class HomographyWarpCreator : public nvinfer1::IPluginCreatorV3One
{
public:
    HomographyWarpCreator();

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
